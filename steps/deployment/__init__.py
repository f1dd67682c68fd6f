"""Deployment steps: export the champion, build the Bento, optionally serve it."""

from steps.deployment.build_bento import build_bento
from steps.deployment.export_champion import export_champion
from steps.deployment.serve_bento import serve_bento

__all__ = ["build_bento", "export_champion", "serve_bento"]

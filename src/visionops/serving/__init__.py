"""Serving: the Bento model store entry, the BentoML service and its web page."""

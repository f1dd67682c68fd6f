"""Test doubles for services that cannot be reached from the tests."""

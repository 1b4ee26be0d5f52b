"""Accounts: registration, login/logout (sessions), bearer tokens for the JSON API."""

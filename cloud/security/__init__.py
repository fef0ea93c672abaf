"""Secrets, password hashing, login tokens and encryption of personal data."""

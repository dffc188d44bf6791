"""Billing core (pure): money, the price book, rating usage, and ledger rules."""

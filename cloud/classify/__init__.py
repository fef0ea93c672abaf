"""Complaint classification from text: a corpus, a character n-gram model, retraining from staff overrides."""

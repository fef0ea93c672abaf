"""Complaint analytics: KPIs by period and dimension, causes, top sources, alarm-to-fix times, the
volume forecast, and their export as CSV and Excel."""

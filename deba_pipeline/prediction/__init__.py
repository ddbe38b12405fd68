"""Predict before you spend (docs/method.md "prediction"): from a fixed-batch profile's noise
scale and a step-time table, what a batch-size strategy will save. Pure functions over records
and tables; nothing here trains."""

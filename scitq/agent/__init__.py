"""The scitq agent: claims tasks from PostgreSQL, stages their data, runs their commands."""

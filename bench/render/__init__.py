"""Rendering for people: the report (Markdown and HTML), plots, the console, comparing two runs,
and the one formatting module (display)."""

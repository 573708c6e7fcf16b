"""Results: the typed model, statistics, histograms, the run's files (store) and reading them
back (reader), and the summary every render and budget reads."""

"""A toy experiment, as a third party would write one: a package with its experiment, its own
scenario and its budget figures, known to the harness only by registration."""

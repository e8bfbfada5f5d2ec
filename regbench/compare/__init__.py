"""`regbench compare`: aggregate finished runs over seeds and compare groups against a baseline."""

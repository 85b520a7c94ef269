"""A run's life around the training loop: its folder (folder.py: who owns it, what may be written, when), its
record (record.py: name, environment, seeding, log file), exact resume (resume.py: last.pt, signals) and its end
(results.py: testing, the cold-start slice, results.json)."""

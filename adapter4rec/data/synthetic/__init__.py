"""The embedded default data: seeded synthetic generators of text and image datasets (the demo, the tests, the
benchmarks); nothing at run time imports it."""

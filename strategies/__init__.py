"""Example strategies: each a small class in one file, loaded by `botkit run` by its file name."""

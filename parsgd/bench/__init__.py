"""``parsgd bench``: measured performance against baselines run in the same process tree."""

"""Data: synthetic generators and the memory (private or shared) that holds them."""

"""Claim cards (conf/claim/*.yaml): a paper's claim as a baseline-vs-treatment sweep, judged by a paired test.

`regbench reproduce NAME` runs a card as an ordinary `regbench train -m` sweep and writes the verdict. Card
loading, listing and the argument checks import no torch, so `--list` and mistakes answer at once.
"""

"""Make the checkout importable as the collection inferops.gpu (ansible_collections.inferops.gpu)."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".collections")


def _link_collection():
    # ansible_collections is a namespace package: this entry merges with the one the
    # ansible package installs (community.docker & co.).
    link = os.path.join(COLLECTIONS, "ansible_collections", "inferops", "gpu")
    if not os.path.lexists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(REPO, os.path.dirname(link)), link)
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)


_link_collection()

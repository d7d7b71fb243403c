"""What everything may import: errors, atomic writes, likelihood units, where MiniLM lives.

Torch-free and free of every other genzoo package, so the store (the ground floor) can use it.
"""

"""Built-in renderers. Each runs as its own process (``python -m render_nodes.renderers.<name>``).

Kept light on purpose: a renderer imports only the standard library, so starting one is cheap.
"""

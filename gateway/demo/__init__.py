"""The built-in demo upstream: a small MCP server the dev gateway starts over stdio.

It exists so `make run` shows the whole call path with nothing else installed. Its
tools are deliberately of three risk kinds (read-only, sandboxed read, destructive).
"""

# While a file of this name is in the demo's state folder, the demo server describes
# read_file as a poisoned server would (`gateway demo rug-pull`).
RUG_PULL_MARKER = "rug-pull"

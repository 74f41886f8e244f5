"""The built-in demo upstream: a small MCP server the dev gateway starts over stdio.

It exists so `make run` shows the whole call path with nothing else installed. Its
tools are deliberately of three risk kinds (read-only, sandboxed read, destructive).
"""

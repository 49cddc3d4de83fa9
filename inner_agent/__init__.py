"""The inner agent: import, encrypted store, serving secrets; the isolated side."""

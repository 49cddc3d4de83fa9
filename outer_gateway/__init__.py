"""The outer gateway: secrets, enrolled agents, grants, export; the connected side."""

"""A hop: a relay host in a middle network segment (Purdue 3.5, a DMZ) that moves bundles from
one transport to another, verifying sender signatures on the way, never able to decrypt them."""

"""Privacy: keyed pseudonyms, date shifting and the header de-identification profile."""

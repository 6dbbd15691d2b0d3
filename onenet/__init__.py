"""onenet: one picture of a district from its siloed governance systems."""

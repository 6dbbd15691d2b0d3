"""The city layer: a city warehouse built from what each district publishes for the city."""

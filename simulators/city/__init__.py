"""A simulated city: several districts from the district generator, with people who cross between them."""

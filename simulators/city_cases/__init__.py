"""City-management (数字城管) simulator: a cursor-paged JSON case feed."""

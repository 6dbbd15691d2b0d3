"""Health-code (健康码) simulator: daily export files delivered into a drop folder."""

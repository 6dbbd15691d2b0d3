"""Great Expectations suites and the validation runner (issue: validation)."""

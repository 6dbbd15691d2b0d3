-- analyst ref.division_codes: GB/T 2260 administrative division codes (public reference data);
-- `name` is renamed so that no analyst relation has a column called name (policy.toml).
select code, name as division_name, first_year, last_year from ref.division_codes

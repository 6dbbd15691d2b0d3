-- analyst mart.warnings: aggregates with no person in them, as the warehouse holds them.
select * from mart.warnings

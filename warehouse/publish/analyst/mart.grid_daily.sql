-- analyst mart.grid_daily: aggregates with no person in them, as the warehouse holds them.
select * from mart.grid_daily

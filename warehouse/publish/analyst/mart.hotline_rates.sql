-- analyst mart.hotline_rates: aggregates with no person in them, as the warehouse holds them.
select * from mart.hotline_rates

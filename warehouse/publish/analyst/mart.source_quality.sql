-- analyst mart.source_quality: aggregates with no person in them, as the warehouse holds them.
select * from mart.source_quality

-- analyst mart.issue_of_month: aggregates with no person in them, as the warehouse holds them.
select * from mart.issue_of_month

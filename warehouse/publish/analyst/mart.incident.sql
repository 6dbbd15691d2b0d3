-- analyst mart.incident: one row per incident (tickets and cases about the same thing, linked).
select * from core.incident

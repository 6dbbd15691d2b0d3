-- analyst mart.grid: the grid hierarchy (district, streets, communities, area and micro-grids).
select * from core.grid

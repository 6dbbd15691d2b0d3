-- community mart.grid: the community's own grids (the community row and its area and micro-grids).
select * from core.grid where community_code is not null

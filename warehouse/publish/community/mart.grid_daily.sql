-- community mart.grid_daily: the community's block data per micro-grid and day (for its reports).
select * from mart.grid_daily where community_code is not null

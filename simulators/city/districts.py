"""The city's districts: real Wuhan division codes, names, street offices and a bounding box each."""

from __future__ import annotations

from dataclasses import dataclass

CITY_NAME = "武汉市"
CITY_CODE = 420100
# Wuhan codes registered residents may carry (besides their own district's), in order of weight.
WUHAN_CODES = (420102, 420103, 420104, 420106, 420107, 420111, 420116)


@dataclass(frozen=True)
class DistrictSpec:
    """What makes one district of the city its own: code, name, streets, where it lies."""

    code: int
    name: str
    streets: tuple[str, ...]
    lon: tuple[float, float]
    lat: tuple[float, float]

    @property
    def police(self) -> str:
        """The district's public-security branch (a hotline department): 江汉区 -> 公安江汉分局."""
        return f"公安{self.name.removesuffix('区')}分局"

    def home_origins(self) -> dict[int, float]:
        """Division codes of registered residents: 80% their own, the rest other Wuhan codes and
        黄陂县 (420123, retired in 1998, valid for life) for the old."""
        others = [c for c in WUHAN_CODES if c != self.code][:6]
        weights = [0.05, 0.04, 0.03, 0.02, 0.02, 0.02]
        return {self.code: 0.80, **dict(zip(others, weights, strict=True)), 420123: 0.02}


# The real street offices (街道) of eight central Wuhan districts.
DISTRICTS: tuple[DistrictSpec, ...] = (
    DistrictSpec(420102, "江岸区", (
        "大智街道", "一元街道", "车站街道", "四唯街道", "永清街道", "西马街道", "球场街道", "劳动街道",
        "二七街道", "新村街道", "丹水池街道", "台北街道", "花桥街道", "谌家矶街道", "后湖街道",
        "百步亭花园路街道", "塔子湖街道"), (114.27, 114.36), (30.59, 30.70)),
    DistrictSpec(420103, "江汉区", (
        "民族街道", "花楼街道", "水塔街道", "民权街道", "满春街道", "民意街道", "新华街道", "万松街道",
        "唐家墩街道", "北湖街道", "前进街道", "常青街道", "汉兴街道"), (114.22, 114.29), (30.57, 30.64)),
    DistrictSpec(420104, "硚口区", (
        "古田街道", "韩家墩街道", "宗关街道", "汉水桥街道", "宝丰街道", "荣华街道", "汉中街道",
        "汉正街道", "六角亭街道", "长丰街道", "易家街道"), (114.18, 114.26), (30.56, 30.63)),
    DistrictSpec(420106, "武昌区", (
        "积玉桥街道", "杨园街道", "徐家棚街道", "粮道街道", "中华路街道", "黄鹤楼街道", "紫阳街道",
        "白沙洲街道", "首义路街道", "中南路街道", "水果湖街道", "珞珈山街道", "石洞街道", "南湖街道"),
        (114.28, 114.37), (30.50, 30.60)),
    DistrictSpec(420105, "汉阳区", (
        "建桥街道", "鹦鹉街道", "洲头街道", "五里墩街道", "琴断口街道", "晴川街道", "江堤街道",
        "永丰街道", "四新街道", "江汉二桥街道"), (114.18, 114.27), (30.50, 30.57)),
    DistrictSpec(420107, "青山区", (
        "红卫路街道", "冶金街道", "新沟桥街道", "红钢城街道", "工人村街道", "青山镇街道", "厂前街道",
        "武东街道", "白玉山街道", "钢花村街道"), (114.37, 114.47), (30.60, 30.67)),
    DistrictSpec(420111, "洪山区", (
        "珞南街道", "关山街道", "狮子山街道", "张家湾街道", "梨园街道", "卓刀泉街道", "洪山街道",
        "和平街道", "青菱街道", "八吉府街道"), (114.33, 114.45), (30.47, 30.56)),
    DistrictSpec(420112, "东西湖区", (
        "吴家山街道", "将军路街道", "慈惠街道", "走马岭街道", "径河街道", "长青街道", "辛安渡街道",
        "东山街道", "柏泉街道", "新沟镇街道"), (114.05, 114.20), (30.62, 30.75)),
)
MAX_DISTRICTS = len(DISTRICTS)

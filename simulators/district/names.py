"""Chinese names with realistic frequencies, and the ways silos misspell them.

Surname shares follow the published national ranking (2020 census order, rounded); given
names mix an era-dependent list of very common names (so namesakes occur as often as they do
in life: 张伟, 王芳, 李娜) with names composed from common characters.
"""

from __future__ import annotations

import numpy as np

# (surname, share in percent) — top surnames cover ~87% of the population.
SURNAMES: list[tuple[str, float]] = [
    ("王", 7.12), ("李", 7.00), ("张", 6.74), ("刘", 5.10), ("陈", 4.61), ("杨", 3.22),
    ("黄", 2.45), ("赵", 2.19), ("吴", 2.00), ("周", 1.95), ("徐", 1.45), ("孙", 1.38),
    ("马", 1.29), ("朱", 1.28), ("胡", 1.16), ("郭", 1.15), ("何", 1.06), ("林", 1.00),
    ("高", 1.00), ("罗", 0.95), ("郑", 0.80), ("梁", 0.74), ("谢", 0.72), ("宋", 0.64),
    ("唐", 0.63), ("许", 0.60), ("韩", 0.59), ("冯", 0.57), ("邓", 0.56), ("曹", 0.55),
    ("彭", 0.54), ("曾", 0.53), ("肖", 0.52), ("田", 0.52), ("董", 0.50), ("袁", 0.48),
    ("潘", 0.46), ("于", 0.45), ("蒋", 0.45), ("蔡", 0.44), ("余", 0.43), ("杜", 0.41),
    ("叶", 0.40), ("程", 0.39), ("苏", 0.37), ("魏", 0.36), ("吕", 0.35), ("丁", 0.34),
    ("任", 0.33), ("沈", 0.32), ("姚", 0.31), ("卢", 0.30), ("姜", 0.29), ("崔", 0.28),
    ("钟", 0.27), ("谭", 0.27), ("陆", 0.26), ("汪", 0.26), ("范", 0.25), ("金", 0.25),
    ("石", 0.24), ("廖", 0.24), ("贾", 0.23), ("夏", 0.23), ("韦", 0.22), ("付", 0.22),
    ("方", 0.21), ("白", 0.21), ("邹", 0.20), ("孟", 0.20), ("熊", 0.20), ("秦", 0.19),
    ("邱", 0.19), ("江", 0.19), ("尹", 0.18), ("薛", 0.17), ("闫", 0.17), ("段", 0.16),
    ("雷", 0.16), ("侯", 0.16), ("龙", 0.15), ("史", 0.15), ("陶", 0.14), ("黎", 0.14),
    ("贺", 0.14), ("顾", 0.13), ("毛", 0.13), ("郝", 0.13), ("龚", 0.13), ("邵", 0.12),
    ("万", 0.12), ("钱", 0.12), ("严", 0.11), ("覃", 0.11), ("武", 0.11), ("戴", 0.11),
    ("莫", 0.10), ("孔", 0.10), ("向", 0.10), ("汤", 0.10), ("单", 0.05), ("欧阳", 0.05),
    ("上官", 0.01), ("司马", 0.01), ("诸葛", 0.005),
]

# Very common full given names by birth era and sex, most common first (Zipf-weighted).
COMMON_GIVEN = {
    ("old", "M"): "建国 建华 建军 国强 志强 国平 德明 卫东 红军 永 伟 军 平 刚 明 华 强 勇 斌 建平".split(),
    ("old", "F"): "秀英 桂英 秀兰 玉兰 桂兰 秀珍 凤英 玉梅 淑珍 红梅 丽华 春梅 芳 华 萍 敏 霞 兰 英 红".split(),
    ("mid", "M"): "伟 强 磊 军 洋 勇 杰 涛 明 超 刚 辉 鹏 华 飞 波 斌 海涛 志强 晓东".split(),
    ("mid", "F"): "芳 娜 敏 静 丽 艳 娟 霞 燕 玲 婷 海燕 晓燕 丽娟 雪梅 慧 琳 倩 颖 红".split(),
    ("young", "M"): "浩然 子轩 宇轩 俊杰 博文 一鸣 子豪 浩宇 天佑 宇 鑫 浩 杰 宇航 家豪 皓轩 俊熙 睿 帆 昊".split(),
    ("young", "F"): "梓涵 欣怡 子涵 诗涵 雨涵 思琪 梦瑶 一诺 佳怡 可欣 婉婷 雨欣 欣妍 语桐 悦 涵 怡 彤 琪 佳琪".split(),
}
# Characters for composed given names.
GIVEN_CHARS = {
    "M": "志国建文明海永宏晓俊子浩宇天家嘉博思振世德立成鹏军伟峰涛龙杰辉斌华林东亮新春宁刚强",
    "F": "秀丽美玉春红晓雅静婷欣雨梦思佳诗慧淑芳兰英梅琴萍燕霞莉娟月凤瑶琳怡涵悦彤妍倩",
}
COMMON_SHARE = 0.55  # share of people whose given name is one of the very common ones

# Uyghur-style names written with an interpunct, for a small share of migrants.
MINORITY_FIRST = ["阿依古丽", "艾力", "古丽米拉", "买买提", "热依拉", "阿布都", "努尔", "迪丽娜尔"]
MINORITY_LAST = ["买买提", "吐尔逊", "阿不都", "艾山", "热合曼", "依明"]

# Same sound, other character: the classic typo of someone writing down a spoken name.
HOMOPHONES = {
    "伟": "玮炜维", "静": "晶菁婧", "丽": "莉俐力", "娜": "那纳", "敏": "民闽", "芳": "方坊",
    "军": "君均", "杰": "洁捷", "涛": "韬滔", "明": "鸣铭", "磊": "蕾垒", "勇": "永涌",
    "华": "桦骅", "红": "宏虹鸿", "燕": "艳雁", "艳": "燕岩", "玲": "琳铃龄", "婷": "亭庭",
    "霞": "侠峡", "秀": "修绣", "英": "瑛莹樱", "兰": "岚蓝澜", "梅": "玫媚", "建": "剑健坚",
    "国": "果帼", "志": "智治至", "文": "雯闻", "晓": "小筱", "俊": "骏峻", "宇": "雨羽禹",
    "浩": "昊皓灏", "鹏": "朋彭", "辉": "晖徽", "慧": "惠蕙", "平": "萍苹", "萍": "平苹",
    "峰": "锋丰", "斌": "彬宾", "超": "潮", "刚": "钢纲", "飞": "菲非", "波": "博", "琳": "林霖",
    "娟": "鹃涓", "倩": "茜芊", "欣": "心新馨", "怡": "宜仪", "涵": "寒含晗", "子": "紫梓",
    "梓": "子紫", "嘉": "佳家", "佳": "嘉家", "家": "佳嘉", "张": "章", "徐": "许", "杨": "阳",
    "吴": "伍武", "李": "黎", "刘": "柳",
}
# Simplified → traditional, for records typed on a traditional-character input method.
TRADITIONAL = str.maketrans({
    "张": "張", "刘": "劉", "陈": "陳", "杨": "楊", "黄": "黃", "赵": "趙", "吴": "吳", "孙": "孫",
    "马": "馬", "郑": "鄭", "罗": "羅", "谢": "謝", "许": "許", "韩": "韓", "冯": "馮", "邓": "鄧",
    "叶": "葉", "苏": "蘇", "吕": "呂", "卢": "盧", "钟": "鍾", "陆": "陸", "贾": "賈", "韦": "韋",
    "龙": "龍", "顾": "顧", "龚": "龔", "万": "萬", "钱": "錢", "严": "嚴", "汤": "湯", "伟": "偉",
    "丽": "麗", "华": "華", "国": "國", "东": "東", "红": "紅", "军": "軍", "强": "強", "杰": "傑",
    "涛": "濤", "辉": "輝", "鹏": "鵬", "飞": "飛", "宁": "寧", "凤": "鳳", "兰": "蘭", "艳": "艷",
    "刚": "剛", "晓": "曉", "静": "靜", "莹": "瑩", "诗": "詩", "梦": "夢", "宝": "寶", "庆": "慶",
})


def _zipf(n: int) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1)
    return w / w.sum()


def era_of(birth_year: np.ndarray) -> np.ndarray:
    return np.where(birth_year < 1970, "old", np.where(birth_year < 1995, "mid", "young"))


def draw_names(rng: np.random.Generator, sex: np.ndarray, birth_year: np.ndarray,
               surnames: np.ndarray | None = None) -> np.ndarray:
    """Full names for people of the given sex ('M'/'F') and birth year; surnames optional (inherit)."""
    n = len(sex)
    if surnames is None:
        surnames = draw_surnames(rng, n)
    given = np.empty(n, dtype=object)
    eras = era_of(birth_year)
    common = rng.random(n) < COMMON_SHARE
    for (era, sx), pool in COMMON_GIVEN.items():
        idx = np.flatnonzero(common & (eras == era) & (sex == sx))
        given[idx] = np.array(pool, dtype=object)[rng.choice(len(pool), size=len(idx), p=_zipf(len(pool)))]
    for sx, chars in GIVEN_CHARS.items():
        idx = np.flatnonzero(~common & (sex == sx))
        char_pool = np.array(list(chars), dtype=object)
        first = char_pool[rng.integers(0, len(char_pool), len(idx))]
        second = char_pool[rng.integers(0, len(char_pool), len(idx))]
        single = rng.random(len(idx)) < 0.25
        given[idx] = np.where(single, first, first + second)
    return surnames.astype(object) + given


def draw_surnames(rng: np.random.Generator, n: int) -> np.ndarray:
    names = np.array([s for s, _ in SURNAMES], dtype=object)
    share = np.array([p for _, p in SURNAMES])
    return names[rng.choice(len(names), size=n, p=share / share.sum())]


def draw_minority_names(rng: np.random.Generator, n: int) -> np.ndarray:
    first = np.array(MINORITY_FIRST, dtype=object)[rng.integers(0, len(MINORITY_FIRST), n)]
    last = np.array(MINORITY_LAST, dtype=object)[rng.integers(0, len(MINORITY_LAST), n)]
    return first + "·" + last


def homophone_typo(name: str, r: float) -> str:
    """Replace one character that has a homophone (r in [0,1) picks which and by what)."""
    spots = [i for i, ch in enumerate(name) if ch in HOMOPHONES]
    if not spots:
        return name
    i = spots[int(r * len(spots))]
    options = HOMOPHONES[name[i]]
    ch = options[int(r * 997) % len(options)]
    return name[:i] + ch + name[i + 1:]


def to_traditional(name: str) -> str:
    return name.translate(TRADITIONAL)

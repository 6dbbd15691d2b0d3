"""What callers say (诉求内容): one problem per incident, told in each caller's own words."""

from __future__ import annotations

import numpy as np

# Per hotline category: problems, each a key phrase every caller uses for it (people name the same
# broken thing alike) and remarks a caller may add in their own words. An incident has one problem,
# one unit and one spot; each of its tickets frames them differently ({p} the building, {u} the unit,
# {s} the spot, when the caller names them). Two incidents of one category at one building usually
# differ in the problem, or else in where it is.
PROBLEMS: dict[str, list[tuple[str, list[str]]]] = {
    "环境卫生": [
        ("垃圾堆放无人清运", ["好几天没人收", "味道很大", "堆成山了"]),
        ("道路脏乱没人清扫", ["全是泥土和落叶", "下雨全是泥", "环卫很久没来"]),
        ("垃圾桶满溢", ["污水横流", "溢到地上", "苍蝇很多"]),
        ("宠物粪便遍地", ["遛狗不牵绳", "草坪里到处都是", "没人管"]),
        ("焚烧落叶杂物", ["浓烟呛人", "冒黑烟", "窗户都不敢开"]),
    ],
    "市政设施": [
        ("井盖破损", ["存在安全隐患", "晚上有人差点踩空", "车一压就响"]),
        ("路灯不亮", ["晚上一片漆黑", "走夜路害怕", "坏了好几盏"]),
        ("护栏倒伏", ["被车撞歪了", "倒在地上没人扶", "行人很危险"]),
        ("路面塌陷", ["出了一个大坑", "电动车摔了", "下雨积水"]),
        ("消防栓漏水", ["一直在往外冒水", "被撞坏了", "地上全是水"]),
    ],
    "交通出行": [
        ("机动车乱停放堵塞消防通道", ["消防车进不来", "私家车占满了", "多次劝说无效"]),
        ("占道经营", ["小摊贩摆摊", "行人只能走机动车道", "人行道走不了"]),
        ("电动车乱停乱放", ["停得密密麻麻", "堵住了出口", "出不去"]),
        ("红绿灯故障", ["车乱开很危险", "一直闪黄灯", "路口很乱"]),
    ],
    "噪音扰民": [
        ("夜间施工噪音", ["半夜还在打桩", "吵得睡不着", "十一点后还在干"]),
        ("装修噪音", ["电钻从早响到晚", "中午也在砸墙", "周末也不停"]),
        ("广场舞音响太吵", ["晚上九点还不停", "音乐开得很大", "老人孩子休息不了"]),
        ("商铺喇叭叫卖", ["循环播放广告", "吵得不行", "一整天不停"]),
    ],
    "物业管理": [
        ("电梯故障", ["多日未修", "老人上下楼很困难", "按键没反应"]),
        ("楼道堆物", ["物业不作为", "消防隐患", "旧家具纸箱堆满"]),
        ("门禁损坏", ["外人随便进出", "刷卡没反应", "门关不上"]),
        ("外墙屋面渗水", ["墙面发霉", "墙皮脱落", "下雨就漏"]),
        ("楼道灯不亮", ["晚上上楼看不见", "声控灯全坏了", "老人摔了一跤"]),
    ],
    "供水供电": [
        ("停水未通知", ["事先没有任何通知", "从早上开始没水", "没贴公告"]),
        ("水压低高层无水", ["热水器打不着火", "水龙头出水很小", "洗不了澡"]),
        ("突然停电", ["冰箱都停了", "电梯也停了", "好几个小时没人来修"]),
        ("自来水发黄", ["有异味", "浑浊", "有铁锈味不敢喝"]),
    ],
    "疫情防控": [
        ("核酸检测点开放时间", ["几点开门", "哪里可以做", "周末开不开"]),
        ("隔离人员生活物资", ["买不到菜", "需要帮忙送", "缺米缺油"]),
        ("跨区出行政策", ["回来需不需要隔离", "要不要报备", "需要什么证明"]),
        ("健康码变黄码", ["不知道原因", "怎么转绿", "没去过风险地区"]),
    ],
    "邻里纠纷": [
        ("邻居占用公共楼道", ["放鞋柜杂物", "还装了门", "协商不了"]),
        ("楼上漏水", ["渗到天花板", "找他不理", "墙面泡了"]),
        ("邻居家狗叫扰民", ["整夜叫", "不拴绳吓到小孩", "天天叫"]),
    ],
    "社会保障": [
        ("高龄津贴办理", ["需要哪些材料", "老人满八十岁了", "怎么申请"]),
        ("独居老人帮扶", ["行动不便没人照顾", "生病了需要上门", "子女不在身边"]),
        ("低保申请", ["家里困难", "要找哪里办", "审核进度"]),
    ],
    "市场监管": [
        ("价格欺诈", ["缺斤少两", "标价和结账不一样", "乱收费"]),
        ("餐馆卫生差", ["后厨脏乱", "吃了拉肚子", "油烟直排"]),
        ("销售过期食品", ["牛奶过期了还在卖", "过期面包", "不给退"]),
    ],
}
# Where at the building the problem is ({s}); an incident has one, most callers name it.
SPOTS = ["附近", "门口", "东门", "北门", "南侧", "西边", "楼下", "旁边", "对面", "后面", "地下车库入口", "小广场"]
# How a caller frames it: place first or problem first, a question or a complaint.
FRAMES = ["{p}{u}{s}{k}，{e}", "{p}{u}{s}{k}", "{p}{u}{s}{k}的问题，{e}", "{e}，{p}{u}{s}{k}", "{p}{s}{u}{k}，{e}，{e2}"]
OPENERS = ["", "", "", "您好，", "市民来电反映：", "来电人称"]
CLOSERS = ["", "", "", "，请尽快处理", "，希望有关部门尽快解决", "，已经反映过一次了", "，请相关部门核实"]


def draw(rng: np.random.Generator, categories: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per incident (its hotline category): which problem, which unit, which spot."""
    k = len(categories)
    problem = np.array([int(u * len(PROBLEMS[c])) for u, c in zip(rng.random(k), categories, strict=True)], dtype=int)
    return problem, rng.integers(1, 4, k), rng.integers(0, len(SPOTS), k)


def compose(rng: np.random.Generator, categories: list[str], incident: np.ndarray, place: np.ndarray,
            drawn: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[str]:
    """One text per ticket: the incident's problem, unit and spot in the caller's own framing and remarks."""
    problem, unit, spot = drawn
    out = []
    for cat, i, pl in zip(categories, incident.tolist(), place, strict=True):
        key, remarks = PROBLEMS[cat][problem[i]]
        e, e2 = rng.choice(len(remarks), 2, replace=False).tolist()
        u = f"{unit[i]}单元" if rng.random() < 0.8 else ""
        s = SPOTS[spot[i]] if rng.random() < 0.8 else ""
        text = FRAMES[int(rng.integers(0, len(FRAMES)))].format(p=pl, u=u, s=s, k=key, e=remarks[e], e2=remarks[e2])
        out.append(OPENERS[int(rng.integers(0, len(OPENERS)))] + text + CLOSERS[int(rng.integers(0, len(CLOSERS)))])
    return out


def describe(rng: np.random.Generator, categories: list[str], incidents: np.ndarray, compound: np.ndarray,
             drawn: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[str]:
    """A grid worker's case text for incidents callers also reported: the same problem, in brief."""
    problem, _, spot = drawn
    return [f"{comp}{SPOTS[spot[i]] if rng.random() < 0.8 else '附近'}{PROBLEMS[cat][problem[i]][0]}"
            for cat, i, comp in zip(categories, incidents.tolist(), compound, strict=True)]

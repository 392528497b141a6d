"""A small deterministic synthetic Chinese NER corpus for tests and CI.

When the real MSRA corpus (env MSRA_DIR, default ../shared/data/msra) is absent, training
tests fall back to these sentences. They are built from templates whose slots are filled from
built-in name lists, with strong context words around each slot ("记者…报道", "在…举行"),
so a tiny model learns them within a few hundred steps. Random filler clauses vary the length
(mostly 10-80 characters) and about 3% of sentences exceed 150 characters to exercise
long-text windowing.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from .example import Entity, Example
from .writers import write_conll

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
GIVEN_NAMES = (
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛",
    "明", "超", "秀英", "霞", "平", "刚", "桂英", "建华", "志强", "海燕", "晓东", "春梅", "国庆",
    "文博", "子涵", "雨轩", "浩然", "欣怡", "思远", "立新", "玉兰", "德胜", "红梅", "建国", "振华",
)
LOCATIONS = (
    "北京", "上海", "天津", "重庆", "广州", "深圳", "杭州", "南京", "武汉", "成都", "西安", "长沙",
    "郑州", "济南", "青岛", "大连", "沈阳", "哈尔滨", "长春", "昆明", "贵阳", "南宁", "福州", "厦门",
    "合肥", "南昌", "太原", "石家庄", "兰州", "西宁", "拉萨", "乌鲁木齐", "呼和浩特", "银川", "海口",
    "台北", "香港", "澳门", "苏州", "无锡", "日本", "美国", "英国", "法国", "德国", "俄罗斯", "巴西",
    "印度", "埃及", "澳大利亚", "长江", "黄河", "泰山", "西湖",
)
ORGANIZATIONS = (
    "新华社", "人民日报社", "中央电视台", "国务院", "外交部", "教育部", "财政部", "科学院",
    "工程院", "清华大学", "复旦大学", "浙江大学", "南开大学", "同济大学", "中山大学", "联合国",
    "世界银行", "红十字会", "奥委会", "足球协会", "作家协会", "人民银行", "工商银行", "建设银行",
    "农业银行", "招商银行", "中国移动", "中国石化", "国家电网", "宝钢集团", "海尔集团", "联想集团",
    "华为公司", "铁道部", "卫生部", "公安部", "最高人民法院", "人民解放军", "共青团中央", "妇联",
    "科技委员会", "交响乐团", "出版社", "博物馆", "气象局", "统计局",
)

# Slots are {PER}, {LOC}, {ORG}; the words around them are the cues the model learns.
TEMPLATES = (
    "记者{PER}报道",
    "{PER}在{LOC}会见了{ORG}代表团",
    "{ORG}今天在{LOC}召开工作会议",
    "据{ORG}消息，{PER}将于下周访问{LOC}",
    "{PER}同志担任{ORG}主任",
    "来自{LOC}的{PER}获得了冠军",
    "{ORG}发言人{PER}表示，合作前景广阔",
    "{LOC}与{LOC}之间开通了新的航线",
    "{PER}和{PER}一起参观了{ORG}",
    "本报{LOC}电",
    "{ORG}宣布成立新的研究中心",
    "{PER}教授在{ORG}作了报告",
    "今年{LOC}的经济增长速度明显加快",
    "{PER}说：“我们对{LOC}很有信心。”",
    "{ORG}和{ORG}签署了合作协议",
    "{PER}出生于{LOC}",
    "{LOC}举行了盛大的庆祝活动",
    "{ORG}的专家们来到{LOC}考察",
    "{PER}先生是{ORG}的老职工",
    "总理{PER}抵达{LOC}进行正式访问",
    "{PER}女士致辞",
    "这次会议由{ORG}主办",
    "今天天气晴朗，人们走上街头",
    "大家都认为这个办法很好",
    "会议期间，代表们进行了认真讨论",
)
# Common characters for filler clauses.
_COMMON_CHARS = (
    "的一是了不在有人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同"
    "工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二"
    "理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那"
    "社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条"
    "只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次"
    "品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几"
    "九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压"
    "志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场"
    "身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温"
    "传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断"
    "深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值"
    "号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆"
    "包火住调满县局照参红细引听该铁价严龙飞"
)
# Filler is kept disjoint from every name character so entity characters only ever appear in
# entities or template cue words, which is what makes the corpus learnable fast.
_NAME_CHARS = set(SURNAMES + "".join(GIVEN_NAMES + LOCATIONS + ORGANIZATIONS))
_FILLER = "".join(c for c in dict.fromkeys(_COMMON_CHARS) if c not in _NAME_CHARS)
_SLOT = re.compile(r"\{(PER|LOC|ORG)\}")
SUPPORTED_TYPES = ("PER", "LOC", "ORG")
LONG_SENTENCE_RATE = 0.03


def make_synthetic_corpus(
    n_sentences: int, seed: int, types: tuple[str, ...] = ("PER", "LOC", "ORG")
) -> list[Example]:
    """Generate a deterministic list of synthetic Chinese NER sentences.

    Args:
      n_sentences: how many sentences.
      seed: the same seed always gives the same corpus.
      types: entity types to generate, a subset of ("PER", "LOC", "ORG"); templates needing
        other types are not used.

    Returns:
      Examples with sorted, non-overlapping entities; source is "synthetic:INDEX".

    Raises:
      ValueError: an unsupported type is requested.
    """
    unknown = set(types) - set(SUPPORTED_TYPES)
    if unknown:
        raise ValueError(
            f"synthetic corpus supports types {SUPPORTED_TYPES}, not {sorted(unknown)}"
        )
    templates = [t for t in TEMPLATES if set(_SLOT.findall(t)) <= set(types)]
    rng = random.Random(seed)
    examples = []
    for index in range(n_sentences):
        target = rng.randint(151, 220) if rng.random() < LONG_SENTENCE_RATE else rng.randint(10, 80)
        examples.append(_sentence(rng, templates, target, f"synthetic:{index}"))
    return examples


def write_synthetic_split(
    directory: str | os.PathLike,
    seed: int = 0,
    n_train: int = 800,
    n_dev: int = 100,
    n_test: int = 100,
) -> dict[str, Path]:
    """Write train.txt / dev.txt / test.txt in MSRA's CoNLL BIO layout.

    Args:
      directory: created if missing.
      seed: corpus seed.
      n_train, n_dev, n_test: sentences per split.

    Returns:
      {"train": path, "dev": path, "test": path}.
    """
    directory = Path(directory)
    examples = make_synthetic_corpus(n_train + n_dev + n_test, seed)
    splits = {
        "train": examples[:n_train],
        "dev": examples[n_train : n_train + n_dev],
        "test": examples[n_train + n_dev :],
    }
    return {
        name: write_conll(part, directory / f"{name}.txt", "bio") for name, part in splits.items()
    }


def _sentence(rng: random.Random, templates: list[str], target: int, source: str) -> Example:
    """Join filled templates and filler clauses until the sentence reaches ~`target` chars."""
    text = ""
    entities: list[Entity] = []
    while True:
        if rng.random() < 0.8:
            piece, spans = _fill(rng, rng.choice(templates))
        else:
            piece, spans = "".join(rng.choice(_FILLER) for _ in range(rng.randint(3, 12))), []
        if text:
            text += "，"
        entities += [Entity(s + len(text), e + len(text), t) for s, e, t in spans]
        text += piece
        if len(text) >= max(target - 4, 9):
            break
    return Example(text + "。", entities, source)


def _fill(rng: random.Random, template: str) -> tuple[str, list[tuple[int, int, str]]]:
    """Fill a template's slots; returns the text and (start, end, type) spans."""
    out, spans, pos = "", [], 0
    for match in _SLOT.finditer(template):
        out += template[pos : match.start()]
        name = _name(rng, match.group(1))
        spans.append((len(out), len(out) + len(name), match.group(1)))
        out += name
        pos = match.end()
    return out + template[pos:], spans


def _name(rng: random.Random, type_: str) -> str:
    if type_ == "PER":
        return rng.choice(SURNAMES) + rng.choice(GIVEN_NAMES)
    if type_ == "LOC":
        return rng.choice(LOCATIONS)
    return rng.choice(ORGANIZATIONS)

"""The course's glossary: one term, one Chinese rendering, one definition (术语表).

Both editions follow this table: the English edition glosses a term in Chinese the first time
it appears, the Chinese edition uses the Chinese term throughout. ``rejected`` lists renderings
that collide with another term or mislead (for example 随机数 for *nonce*: GCM needs a value
that never repeats, not a random one); ``tests/test_editions.py`` checks that none of them
appears in either edition. The conventions behind the choices are in ``shared/ZH_STYLE.md``.

Examples
--------
>>> from course_lib.glossary import GLOSSARY, lookup
>>> lookup("nonce").chinese
'一次性数'
>>> len(GLOSSARY) > 50
True
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["Term", "GLOSSARY", "lookup", "rejected_patterns", "markdown_table"]


class Term(NamedTuple):
    """One glossary entry."""

    english: str
    chinese: str
    definition: str
    definition_zh: str
    rejected: tuple[str, ...] = ()  # regular expressions the Chinese edition must not contain


GLOSSARY: tuple[Term, ...] = (
    # -- privacy and threat models ------------------------------------------------------------
    Term("data privacy", "数据隐私", "keeping the records a model is trained on from people not "
         "allowed to see them", "训练所用的数据不被无权者获取"),
    Term("model privacy", "模型隐私", "keeping a model's parameters, and what they reveal about "
         "its training data, from people not allowed to see them",
         "模型参数及其泄露的训练数据信息不被无权者获取"),
    Term("threat model", "威胁模型", "who the adversary is, what it can see and do, and what it "
         "must not learn", "攻击者是谁、能看到和做什么、不应得知什么"),
    Term("honest-but-curious (semi-honest)", "半诚实（诚实但好奇）", "follows the protocol but "
         "tries to learn from what it sees", "遵守协议，但试图从所见信息中推断"),
    Term("malicious", "恶意", "may deviate from the protocol in any way",
         "可以任意偏离协议"),
    Term("non-colluding", "不合谋", "parties that do not pool what they know",
         "各方不互通所掌握的信息", (r"不串通",)),
    Term("honest majority", "诚实方占多数", "more than half of the parties follow the protocol",
         "超过半数参与方遵守协议"),
    Term("party", "参与方", "one participant of a protocol", "协议中的一个参与者"),
    Term("client", "客户端", "a participant that holds data and trains locally",
         "持有数据并在本地训练的参与方"),
    Term("server", "服务器", "the participant that coordinates training and aggregates",
         "协调训练并执行聚合的参与方"),
    Term("de-identification", "去标识化", "removing direct identifiers so records are not "
         "linked to a person without extra information",
         "去除直接标识符，使记录在没有额外信息时无法关联到个人"),
    Term("anonymisation", "匿名化", "processing so that records can no longer be linked to a "
         "person at all", "处理后的记录无法再关联到个人"),
    # -- encryption -----------------------------------------------------------------------------
    Term("data encryption", "数据加密", "encrypting the data itself, at rest and in transit",
         "对数据本身加密（存储中、传输中）"),
    Term("parameter encryption", "参数加密", "encrypting a model's parameters so that only key "
         "holders can read or use them", "加密模型参数，只有持有密钥者才能读取或使用"),
    Term("computing on encrypted values", "密态计算", "computing on ciphertexts without "
         "decrypting them (homomorphic encryption, secret sharing)",
         "不解密而直接在密文上计算（同态加密、秘密共享）", (r"密文计算",)),
    Term("symmetric encryption", "对称加密", "one key encrypts and decrypts",
         "加密和解密使用同一个密钥"),
    Term("asymmetric (public-key) encryption", "非对称加密（公钥加密）", "a public key "
         "encrypts, only the private key decrypts", "公钥加密，只有私钥能解密"),
    Term("nonce", "一次性数", "a value that must never repeat under one key (GCM needs "
         "uniqueness, not secrecy)", "同一密钥下绝不能重复的值（GCM 要求唯一，而非随机或保密）",
         (r"一次性随机数", r"随机数（nonce）", r"nonce（随机数）", r"随机数 \(nonce\)")),
    Term("initialisation vector (IV)", "初始化向量", "the per-message input of a block-cipher "
         "mode", "分组密码工作模式中每条消息的输入"),
    Term("authenticated encryption (AEAD)", "认证加密", "encryption whose decryption also "
         "proves the data was not changed", "解密的同时验证数据未被篡改的加密"),
    Term("associated data", "关联数据", "data that is authenticated but not encrypted",
         "被认证但不被加密的数据"),
    Term("authentication tag", "认证标签", "the short value that lets decryption detect any "
         "change", "解密时用于发现任何篡改的短值"),
    Term("message authentication code (MAC)", "消息鉴别码", "a keyed checksum that detects "
         "changes", "带密钥的校验值，用于发现篡改"),
    Term("key derivation function", "密钥派生函数", "turns a password or shared secret into a "
         "key", "把口令或共享秘密变成密钥"),
    Term("hybrid encryption", "混合加密", "a public-key scheme encrypts a fresh symmetric key, "
         "which encrypts the data (industry: digital envelope, 数字信封)",
         "用公钥算法加密一个新的对称密钥，再用它加密数据（业界称数字信封）"),
    Term("key encapsulation mechanism (KEM)", "密钥封装机制", "a public-key way to agree on a "
         "fresh symmetric key", "用公钥方式协商出新的对称密钥"),
    Term("digital signature", "数字签名", "proves who produced data and that it is unchanged",
         "证明数据的来源且未被篡改"),
    Term("post-quantum cryptography", "后量子密码", "schemes believed secure against quantum "
         "computers", "被认为能抵御量子计算机攻击的密码算法"),
    Term("at rest / in transit / in use", "存储中 / 传输中 / 使用中", "the three states of data "
         "that encryption protects differently", "数据的三种状态，加密对它们的保护方式不同",
         (r"静态存储", r"静态加密", r"静态数据")),
    Term("trusted execution environment (TEE)", "可信执行环境", "hardware-isolated memory where "
         "code runs unseen by the host", "由硬件隔离、宿主无法窥见的执行环境"),
    Term("remote attestation", "远程证明", "a TEE proving to a remote party what code it runs",
         "可信执行环境向远程方证明自己运行的代码", (r"远程认证",)),
    Term("homomorphic encryption", "同态加密", "encryption that allows computing on "
         "ciphertexts", "允许在密文上计算的加密"),
    Term("additively homomorphic", "加法同态", "adding ciphertexts adds the plaintexts "
         "(Paillier)", "密文相乘（或相加）对应明文相加（Paillier）"),
    Term("partially / fully homomorphic", "半同态 / 全同态", "one operation / any circuit on "
         "ciphertexts", "只支持一种运算 / 支持任意电路"),
    Term("packing", "打包", "several fixed-point values in the slots of one Paillier "
         "plaintext", "把多个定点数放进一个 Paillier 明文的不同槽位"),
    Term("fixed-point encoding", "定点数编码", "real numbers scaled to integers by 2^f",
         "把实数乘以 2^f 取整为整数"),
    Term("secure multi-party computation (MPC)", "安全多方计算", "parties compute a function of "
         "their inputs and learn only the result", "各方共同计算其输入的函数，只得到结果",
         (r"多方安全计算",)),
    Term("secret sharing", "秘密共享", "splitting a secret into shares that reveal nothing "
         "alone", "把秘密拆成单独看毫无信息的份额", (r"秘密分享",)),
    Term("share", "份额", "one piece of a shared secret", "被共享秘密的一份"),
    Term("threshold secret sharing (Shamir)", "门限秘密共享", "any t shares reconstruct, fewer "
         "reveal nothing", "任意 t 个份额可恢复秘密，少于 t 个毫无信息"),
    Term("Beaver triple", "Beaver 三元组", "precomputed shares of a, b and ab that let two "
         "parties multiply shared values", "预先生成的 a、b、ab 的份额，用于相乘共享值",
         (r"比弗三元组",)),
    # -- federated learning ---------------------------------------------------------------------
    Term("federated learning", "联邦学习", "training one model on data that stays with its "
         "owners", "数据留在各自所有者手中，共同训练一个模型", (r"联合学习",)),
    Term("horizontal / vertical federated learning", "横向 / 纵向联邦学习", "clients share the "
         "features / share the samples", "各方特征相同、样本不同 / 样本相同、特征不同",
         (r"水平联邦", r"垂直联邦")),
    Term("cross-silo / cross-device", "跨机构 / 跨设备", "a few organisations / many phones or "
         "sensors", "少数机构之间 / 大量手机或传感器之间", (r"跨分区",)),
    Term("FedAvg (federated averaging)", "联邦平均（FedAvg）", "average of the clients' models "
         "weighted by their sample counts", "按样本数加权平均各客户端的模型"),
    Term("communication round", "通信轮次", "one download-train-upload-aggregate cycle",
         "一次下发、训练、上传、聚合的循环", (r"通信轮数",)),
    Term("local epochs", "本地训练 epoch 数", "passes over its own data a client makes per "
         "round", "客户端每轮在本地数据上训练的遍数", (r"本地轮数",)),
    Term("non-IID", "非独立同分布", "clients' data follow different distributions",
         "各客户端数据服从不同分布"),
    Term("client drift", "客户端漂移", "local models moving towards their own optimum, away "
         "from the global one", "本地模型偏向各自的最优点，偏离全局最优"),
    Term("client dropout", "掉线", "a client that stops answering during a round",
         "客户端在一轮中途停止响应"),
    Term("secure aggregation", "安全聚合", "the server learns only the sum of the updates",
         "服务器只得到更新之和"),
    Term("pairwise mask", "成对掩码", "random vectors two clients add and subtract so they "
         "cancel in the sum", "两个客户端一加一减、求和时相互抵消的随机向量"),
    Term("consistency check", "一致性检查", "the round of secure aggregation in which clients "
         "sign the survivor list they were shown and check each other's signatures",
         "安全聚合中客户端对服务器给出的幸存者名单签名、并互相核验签名的一轮"),
    Term("split view", "分裂视图", "a cheating server telling different clients different "
         "survivor lists", "恶意服务器向不同客户端给出不同的幸存者名单"),
    Term("withheld shares", "扣留份额", "a cheating server not delivering the shares a client "
         "needs, so that its input is masked with too few peers",
         "恶意服务器不转发客户端需要的份额，使其输入只被很少的邻居掩码"),
    Term("colluding clients", "合谋客户端", "clients that pool what they know with the server",
         "与服务器共享所知信息的客户端", (r"串通",)),
    Term("simulation / deployment", "模拟 / 部署", "one process standing in for the federation "
         "/ real processes on a network", "用一个进程模拟联邦 / 网络上的真实进程",
         (r"仿真",)),
    # -- differential privacy -------------------------------------------------------------------
    Term("differential privacy (DP)", "差分隐私", "outputs barely change when one record (or "
         "client) is added or removed", "增删一条记录（或一个客户端）时输出几乎不变",
         (r"差异化隐私",)),
    Term("privacy budget (epsilon)", "隐私预算", "the bound epsilon on how much one record "
         "changes the output's distribution", "单条记录对输出分布影响的上界 epsilon"),
    Term("privacy loss", "隐私损失", "the log-ratio of an output's probability with and "
         "without one record", "有无某条记录时输出概率之比的对数"),
    Term("neighbouring datasets", "相邻数据集", "two datasets that differ in one record",
         "只相差一条记录的两个数据集"),
    Term("sensitivity", "敏感度", "how much one record can change a function's value",
         "单条记录对函数值的最大影响", (r"灵敏度",)),
    Term("Gaussian mechanism", "高斯机制", "adds Gaussian noise scaled to the sensitivity",
         "按敏感度加入高斯噪声"),
    Term("composition", "组合定理", "how privacy loss adds up over many releases",
         "多次发布时隐私损失如何累积"),
    Term("clipping", "裁剪", "scaling an update or gradient down to a maximum norm",
         "把更新或梯度缩放到不超过给定范数", (r"剪贴",)),
    Term("noise multiplier", "噪声乘数", "noise standard deviation divided by the clipping "
         "norm", "噪声标准差与裁剪范数之比"),
    Term("privacy accountant", "隐私核算器", "computes epsilon spent over a training run",
         "计算一次训练累计消耗的 epsilon", (r"隐私记录",)),
    Term("Rényi differential privacy", "Rényi 差分隐私", "a DP variant that composes tightly; "
         "what the accountant tracks", "组合更紧的差分隐私变体，核算器所跟踪的量"),
    Term("DP-SGD", "差分隐私随机梯度下降（DP-SGD）", "SGD with per-example clipping and "
         "Gaussian noise", "逐样本裁剪并加高斯噪声的 SGD"),
    Term("local vs central DP", "本地 vs 中心化差分隐私", "noise added by each client / by a "
         "trusted server", "由各客户端加噪 / 由可信服务器加噪", (r"中央差分隐私",)),
    Term("privacy audit", "隐私审计", "an experiment that measures a lower bound on epsilon",
         "用实验测出 epsilon 的下界"),
    # -- attacks ----------------------------------------------------------------------------------
    Term("membership inference", "成员推断攻击", "telling whether a record was in the "
         "training set", "判断某条记录是否在训练集中", (r"成员推理",)),
    Term("model inversion", "模型反演", "reconstructing typical training inputs from a model",
         "从模型重建典型的训练输入", (r"模型反转",)),
    Term("gradient inversion", "梯度反演（梯度泄露）", "reconstructing a training input from "
         "its gradient", "从梯度重建训练输入"),
    Term("model extraction", "模型窃取", "copying a model by querying its prediction API",
         "通过查询预测接口复制模型", (r"模型提取",)),
    Term("training-data extraction", "训练数据提取攻击", "making a model emit training data it "
         "memorised", "诱使模型输出其记住的训练数据"),
    Term("fidelity", "保真度", "how often a stolen copy agrees with the victim",
         "窃取的副本与原模型预测一致的比例"),
    Term("canary / exposure", "金丝雀 / 暴露度", "a planted secret and how much the model "
         "reveals it", "植入的秘密及模型泄露它的程度"),
    Term("The Secret Sharer", "The Secret Sharer（金丝雀暴露度测试）", "Carlini et al.'s "
         "exposure experiment; the title stays in English",
         "Carlini 等人的暴露度实验，标题保留英文",
         (r"秘密分享者",)),
    # -- large models -----------------------------------------------------------------------------
    Term("fine-tuning", "微调", "further training of a pre-trained model on new data",
         "在新数据上继续训练预训练模型"),
    Term("LoRA (low-rank adaptation)", "低秩适配（LoRA）", "trains two small matrices per "
         "layer instead of the layer", "每层只训练两个小矩阵而非整层参数"),
    Term("parameter-efficient fine-tuning", "参数高效微调", "fine-tuning that trains a small "
         "fraction of the parameters", "只训练少量参数的微调"),
    Term("inference (serving a model)", "推理", "running a trained model on new inputs",
         "用训练好的模型处理新输入"),
)


def lookup(english: str) -> Term:
    """The entry whose English term starts with ``english`` (case-insensitive)."""
    key = english.lower()
    for term in GLOSSARY:
        if term.english.lower() == key or term.english.lower().startswith(key + " "):
            return term
    raise KeyError(f"no glossary entry for {english!r}")


def rejected_patterns() -> list[tuple[re.Pattern[str], Term]]:
    """Every rejected rendering, compiled, with the entry that rejects it."""
    return [(re.compile(p), t) for t in GLOSSARY for p in t.rejected]


def markdown_table(*, lang: str = "en") -> str:
    """The glossary as a Markdown table, definitions in English (``"en"``) or Chinese."""
    if lang not in ("en", "zh"):
        raise ValueError(f"`lang` must be one of ('en', 'zh'), got {lang!r}")
    if lang == "en":
        rows = ["| English | 中文 | definition |", "|---|---|---|"]
        rows += [f"| {t.english} | {t.chinese} | {t.definition} |" for t in GLOSSARY]
    else:
        rows = ["| 中文 | English | 释义 |", "|---|---|---|"]
        rows += [f"| {t.chinese} | {t.english} | {t.definition_zh} |" for t in GLOSSARY]
    return "\n".join(rows)

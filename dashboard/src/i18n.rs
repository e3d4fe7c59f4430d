//! The words of the pages in English and Simplified Chinese.
//!
//! One struct with a field per phrase, so a phrase missing in one language
//! is a compile error rather than an English word on a Chinese page.

use crate::config::Lang;

/// Every phrase the pages show.
#[derive(Debug)]
pub(crate) struct Texts {
    /// Panorama
    pub(crate) app: &'static str,
    /// Overview
    pub(crate) overview: &'static str,
    /// Layers
    pub(crate) layers: &'static str,
    /// Top-N
    pub(crate) top: &'static str,
    /// Alerts
    pub(crate) alerts: &'static str,
    /// Hosts
    pub(crate) hosts: &'static str,
    /// Log out
    pub(crate) logout: &'static str,
    /// Log in
    pub(crate) login: &'static str,
    /// User
    pub(crate) user: &'static str,
    /// Password
    pub(crate) password: &'static str,
    /// Wrong user name or password, or the form expired: try again.
    pub(crate) login_failed: &'static str,
    pub(crate) login_throttled: &'static str,
    /// 中文
    pub(crate) other_lang: &'static str,
    /// Updated
    pub(crate) updated: &'static str,
    /// Today's volume
    pub(crate) today_volume: &'static str,
    /// Today's success rate
    pub(crate) success_rate: &'static str,
    /// Last minute avg latency
    pub(crate) last_min_latency: &'static str,
    /// Last minute error rate
    pub(crate) last_min_error_rate: &'static str,
    /// Last hour (events/min)
    pub(crate) last_hour: &'static str,
    /// Worst series (last hour)
    pub(crate) worst_series: &'static str,
    /// Firing alerts
    pub(crate) firing_alerts: &'static str,
    /// Nothing is firing.
    pub(crate) no_firing: &'static str,
    /// Silent hosts
    pub(crate) silent_hosts: &'static str,
    /// Every host reported in the last minutes.
    pub(crate) no_silent: &'static str,
    /// Alert rules are not configured in this panorama.
    pub(crate) rules_off: &'static str,
    /// Business
    pub(crate) business: &'static str,
    /// URL
    pub(crate) url: &'static str,
    /// Calls
    pub(crate) call: &'static str,
    /// Components
    pub(crate) component: &'static str,
    /// Infrastructure
    pub(crate) infra: &'static str,
    /// Events
    pub(crate) count: &'static str,
    /// Rate /s
    pub(crate) rate: &'static str,
    /// Errors
    pub(crate) errors: &'static str,
    /// Error ratio
    pub(crate) error_ratio: &'static str,
    /// Avg ms
    pub(crate) avg_ms: &'static str,
    /// p50 ms
    pub(crate) p50: &'static str,
    /// p90 ms
    pub(crate) p90: &'static str,
    /// p99 ms
    pub(crate) p99: &'static str,
    /// Worst p99 ms
    pub(crate) worst_p99: &'static str,
    /// Max ms
    pub(crate) max_ms: &'static str,
    /// Value
    pub(crate) value: &'static str,
    /// Range
    pub(crate) range: &'static str,
    /// From
    pub(crate) from: &'static str,
    /// To
    pub(crate) to: &'static str,
    /// Apply
    pub(crate) apply: &'static str,
    /// same time yesterday
    pub(crate) yesterday: &'static str,
    /// Latency of every event of the layer: p50, p90, p99 and mean; dashed, p99 yesterday.
    pub(crate) latency_note: &'static str,
    /// Series
    pub(crate) series_table: &'static str,
    /// Service
    pub(crate) service: &'static str,
    /// Name
    pub(crate) name: &'static str,
    /// Host
    pub(crate) host: &'static str,
    /// Top-N of one minute
    pub(crate) top_title: &'static str,
    /// Minute
    pub(crate) minute: &'static str,
    /// Rank by
    pub(crate) by: &'static str,
    /// How many
    pub(crate) limit: &'static str,
    /// Show
    pub(crate) show: &'static str,
    /// No data.
    pub(crate) nothing: &'static str,
    /// Samples of the minute
    pub(crate) samples_of: &'static str,
    /// Errors
    pub(crate) error_samples: &'static str,
    /// Slowest requests
    pub(crate) slow_samples: &'static str,
    /// Parse errors
    pub(crate) parse_errors: &'static str,
    /// Code
    pub(crate) code: &'static str,
    /// Latency ms
    pub(crate) latency: &'static str,
    /// Time
    pub(crate) time: &'static str,
    /// Related alerts
    pub(crate) related_alerts: &'static str,
    /// Click a chart to choose a minute.
    pub(crate) pick_minute: &'static str,
    /// Firing
    pub(crate) firing: &'static str,
    /// No data
    pub(crate) no_data: &'static str,
    /// Pending
    pub(crate) pending: &'static str,
    /// Resolved
    pub(crate) resolved: &'static str,
    /// Acknowledge
    pub(crate) acknowledge: &'static str,
    /// Comment
    pub(crate) comment: &'static str,
    /// Acknowledged by
    pub(crate) acked_by: &'static str,
    /// Silences
    pub(crate) silences: &'static str,
    /// New silence
    pub(crate) new_silence: &'static str,
    /// Label
    pub(crate) label: &'static str,
    /// Duration
    pub(crate) duration: &'static str,
    /// Reason
    pub(crate) reason: &'static str,
    /// Create
    pub(crate) create: &'static str,
    /// Expire
    pub(crate) expire: &'static str,
    /// Rule file errors (the previous rules keep running)
    pub(crate) rule_errors: &'static str,
    /// Rules
    pub(crate) rules: &'static str,
    /// History
    pub(crate) history: &'static str,
    /// Search
    pub(crate) search: &'static str,
    /// Since
    pub(crate) since: &'static str,
    /// Rule
    pub(crate) rule: &'static str,
    /// Group
    pub(crate) group: &'static str,
    /// Author
    pub(crate) author: &'static str,
    /// Ends
    pub(crate) ends: &'static str,
    /// Event
    pub(crate) event: &'static str,
    /// Detail
    pub(crate) detail: &'static str,
    /// silenced
    pub(crate) silenced: &'static str,
    /// Acknowledging and silencing need the operator role.
    pub(crate) operator_only: &'static str,
    /// Undelivered notifications
    pub(crate) notifications: &'static str,
    /// Last heartbeat
    pub(crate) last_heartbeat: &'static str,
    /// Agent version
    pub(crate) version: &'static str,
    /// not reported
    pub(crate) not_reported: &'static str,
    /// Source
    pub(crate) source: &'static str,
    /// Lag s
    pub(crate) lag: &'static str,
    /// Parse errors (15 min)
    pub(crate) failed_lines: &'static str,
    /// Host charts (last hour)
    pub(crate) infra_charts: &'static str,
    /// silent
    pub(crate) silent: &'static str,
    /// The store did not answer
    pub(crate) store_error: &'static str,
    /// No such page
    pub(crate) not_found: &'static str,
}

pub(crate) static EN: Texts = Texts {
    app: "Panorama",
    overview: "Overview",
    layers: "Layers",
    top: "Top-N",
    alerts: "Alerts",
    hosts: "Hosts",
    logout: "Log out",
    login: "Log in",
    user: "User",
    password: "Password",
    login_failed: "Wrong user name or password, or the form expired: try again.",
    login_throttled: "Too many failed logins: wait a little, then try again.",
    other_lang: "中文",
    updated: "Updated",
    today_volume: "Today's volume",
    success_rate: "Today's success rate",
    last_min_latency: "Last minute avg latency",
    last_min_error_rate: "Last minute error rate",
    last_hour: "Last hour (events/min)",
    worst_series: "Worst series (last 5 min)",
    firing_alerts: "Firing alerts",
    no_firing: "Nothing is firing.",
    silent_hosts: "Silent hosts",
    no_silent: "Every host reported in the last minutes.",
    rules_off: "Alert rules are not configured in this panorama.",
    business: "Business",
    url: "URL",
    call: "Calls",
    component: "Components",
    infra: "Infrastructure",
    count: "Events",
    rate: "Rate /s",
    errors: "Errors",
    error_ratio: "Error ratio",
    avg_ms: "Avg ms",
    p50: "p50 ms",
    p90: "p90 ms",
    p99: "p99 ms",
    worst_p99: "Worst p99 ms",
    max_ms: "Max ms",
    value: "Value",
    range: "Range",
    from: "From",
    to: "To",
    apply: "Apply",
    yesterday: "same time yesterday",
    latency_note: "Latency of every event of the layer: p50, p90, p99 and mean (ms); dashed, p99 at the same time yesterday.",
    series_table: "Series",
    service: "Service",
    name: "Name",
    host: "Host",
    top_title: "Top-N of one minute",
    minute: "Minute",
    by: "Rank by",
    limit: "How many",
    show: "Show",
    nothing: "No data.",
    samples_of: "Samples of the minute",
    error_samples: "Errors",
    slow_samples: "Slowest requests",
    parse_errors: "Parse errors",
    code: "Code",
    latency: "Latency ms",
    time: "Time",
    related_alerts: "Related alerts",
    pick_minute: "Click a chart to choose a minute.",
    firing: "Firing",
    no_data: "No data",
    pending: "Pending",
    resolved: "Resolved",
    acknowledge: "Acknowledge",
    comment: "Comment",
    acked_by: "Acknowledged by",
    silences: "Silences",
    new_silence: "New silence",
    label: "Label",
    duration: "Duration",
    reason: "Reason",
    create: "Create",
    expire: "Expire",
    rule_errors: "Rule file errors (the previous rules keep running)",
    rules: "Rules",
    history: "History",
    search: "Search",
    since: "Since",
    rule: "Rule",
    group: "Group",
    author: "Author",
    ends: "Ends",
    event: "Event",
    detail: "Detail",
    silenced: "silenced",
    operator_only: "Acknowledging and silencing need the operator role.",
    notifications: "Undelivered notifications",
    last_heartbeat: "Last heartbeat",
    version: "Agent version",
    not_reported: "not reported",
    source: "Source",
    lag: "Lag s",
    failed_lines: "Parse errors (15 min)",
    infra_charts: "Host charts (last hour)",
    silent: "silent",
    store_error: "The store did not answer",
    not_found: "No such page",
};

pub(crate) static ZH: Texts = Texts {
    app: "Panorama 全景监控",
    overview: "总览",
    layers: "分层",
    top: "排行",
    alerts: "告警",
    hosts: "主机",
    logout: "退出",
    login: "登录",
    user: "用户名",
    password: "密码",
    login_failed: "用户名或密码错误，或表单已过期，请重试。",
    login_throttled: "登录失败次数过多，请稍候再试。",
    other_lang: "English",
    updated: "更新于",
    today_volume: "今日总量",
    success_rate: "今日成功率",
    last_min_latency: "最近一分钟平均延迟",
    last_min_error_rate: "最近一分钟错误率",
    last_hour: "最近一小时（每分钟事件数）",
    worst_series: "最差序列（最近 5 分钟）",
    firing_alerts: "正在触发的告警",
    no_firing: "没有正在触发的告警。",
    silent_hosts: "失联主机",
    no_silent: "所有主机最近均有心跳。",
    rules_off: "本实例未配置告警规则。",
    business: "业务",
    url: "接口",
    call: "调用",
    component: "组件",
    infra: "基础设施",
    count: "事件数",
    rate: "速率 /秒",
    errors: "错误数",
    error_ratio: "错误率",
    avg_ms: "平均 ms",
    p50: "p50 ms",
    p90: "p90 ms",
    p99: "p99 ms",
    worst_p99: "最差 p99 ms",
    max_ms: "最大 ms",
    value: "数值",
    range: "时间范围",
    from: "开始",
    to: "结束",
    apply: "应用",
    yesterday: "昨日同期",
    latency_note: "本层所有事件的延迟：p50、p90、p99 与平均值（ms）；虚线为昨日同时段的 p99。",
    series_table: "序列列表",
    service: "服务",
    name: "名称",
    host: "主机",
    top_title: "某一分钟的排行",
    minute: "分钟",
    by: "排序依据",
    limit: "数量",
    show: "显示",
    nothing: "无数据。",
    samples_of: "该分钟的样本",
    error_samples: "错误样本",
    slow_samples: "最慢请求",
    parse_errors: "解析错误",
    code: "状态码",
    latency: "延迟 ms",
    time: "时间",
    related_alerts: "相关告警",
    pick_minute: "点击图表选择分钟。",
    firing: "触发中",
    no_data: "无数据",
    pending: "待定",
    resolved: "已恢复",
    acknowledge: "确认",
    comment: "备注",
    acked_by: "确认人",
    silences: "静默",
    new_silence: "新建静默",
    label: "标签",
    duration: "时长",
    reason: "原因",
    create: "创建",
    expire: "结束",
    rule_errors: "规则文件错误（之前的规则仍在运行）",
    rules: "规则",
    history: "历史",
    search: "搜索",
    since: "开始于",
    rule: "规则",
    group: "分组",
    author: "创建人",
    ends: "结束于",
    event: "事件",
    detail: "详情",
    silenced: "已静默",
    operator_only: "确认和静默需要运维（operator）角色。",
    notifications: "未送达的通知",
    last_heartbeat: "最近心跳",
    version: "Agent 版本",
    not_reported: "未上报",
    source: "日志源",
    lag: "延迟 秒",
    failed_lines: "解析错误（15 分钟）",
    infra_charts: "主机图表（最近一小时）",
    silent: "失联",
    store_error: "存储未响应",
    not_found: "页面不存在",
};

/// The phrases of a language.
pub(crate) fn texts(lang: Lang) -> &'static Texts {
    match lang {
        Lang::En => &EN,
        Lang::Zh => &ZH,
    }
}

impl Texts {
    /// The name of a layer.
    pub(crate) fn layer(&self, l: panorama_model::Layer) -> &'static str {
        use panorama_model::Layer;
        match l {
            Layer::Business => self.business,
            Layer::Url => self.url,
            Layer::Call => self.call,
            Layer::Component => self.component,
            Layer::Infra => self.infra,
        }
    }
}

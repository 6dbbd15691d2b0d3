// The dashboard's filter by street, community and month: inline, offline, from the aggregates
// embedded in the page (#f-data). The choice lives in the address (#street=…&community=…&month=…),
// so a filtered view can be bookmarked or sent. Tiles and tables count the same rows.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("f-data").textContent);
  var C = data.columns; // column index by name in data.days rows
  var $ = function (id) { return document.getElementById(id); };
  var fmt = function (n) { return Number(n).toLocaleString("en-US"); };
  var esc = function (s) {
    return String(s).replace(/[&<>"]/g, function (c) { return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]; });
  };

  function readHash() {
    var out = {street: "", community: "", month: ""};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i > 0) { out[decodeURIComponent(kv.slice(0, i))] = decodeURIComponent(kv.slice(i + 1)); }
    });
    return out;
  }

  function options(select, values, all, chosen) {
    select.innerHTML = '<option value="">' + all + "</option>" + values.map(function (v) {
      return '<option value="' + esc(v[0]) + '"' + (v[0] === chosen ? " selected" : "") + ">" + esc(v[1]) + "</option>";
    }).join("");
  }

  function niceTicks(top) {
    if (top <= 0) { return [0, 1]; }
    var raw = top / 5, mag = Math.pow(10, Math.floor(Math.log10(raw))), step = mag;
    [1, 2, 5, 10].some(function (m) { step = m * mag; return step >= raw * (1 - 1e-9); });
    step = Math.max(step, 1);
    var ticks = [];
    for (var i = 0; i <= Math.ceil(top / step - 1e-9); i++) { ticks.push(i * step); }
    return ticks;
  }

  function lineChart(days, values) {
    var W = 720, H = 260, L = 56, R = 16, T = 18, B = 46;
    var ticks = niceTicks(Math.max.apply(null, values.concat([0]))), top = ticks[ticks.length - 1];
    var n = Math.max(days.length - 1, 1), out = [];
    var x = function (i) { return L + (W - L - R) * i / n; };
    var y = function (v) { return H - B - (H - T - B) * v / top; };
    ticks.forEach(function (t) {
      out.push('<line x1="' + L + '" y1="' + y(t).toFixed(1) + '" x2="' + (W - R) + '" y2="' + y(t).toFixed(1) + '" stroke="#e3e3e3"/>');
      out.push('<text x="' + (L - 6) + '" y="' + (y(t) + 4).toFixed(1) + '" text-anchor="end" class="tick">' + fmt(t) + "</text>");
    });
    out.push('<polyline points="' + values.map(function (v, i) { return x(i).toFixed(1) + "," + y(v).toFixed(1); }).join(" ") +
             '" fill="none" stroke="#2f6db5" stroke-width="2"><title>新增工单</title></polyline>');
    var step = Math.max(1, Math.floor(days.length / 10));
    for (var i = 0; i < days.length; i += step) {
      out.push('<text x="' + x(i).toFixed(1) + '" y="' + (H - B + 14) + '" text-anchor="middle" class="tick">' + days[i].slice(5) + "</text>");
    }
    return '<svg viewBox="0 0 ' + W + " " + H + '" class="chart" role="img" aria-label="每日新增工单" xmlns="http://www.w3.org/2000/svg">' + out.join("") + "</svg>";
  }

  function render() {
    var f = readHash();
    var streets = data.streets, communities = data.communities.filter(function (c) { return !f.street || c[2] === f.street; });
    if (f.community && !communities.some(function (c) { return c[0] === f.community; })) { f.community = ""; }
    if (!f.month || data.months.indexOf(f.month) < 0) { f.month = data.months[data.months.length - 1] || ""; }
    options($("f-street"), streets.map(function (s) { return [s, s]; }), "全部街道", f.street);
    options($("f-community"), communities.map(function (c) { return [c[0], c[1]]; }), "全部社区", f.community);
    options($("f-month"), data.months.map(function (m) { return [m, m]; }), "", f.month);
    $("f-month").querySelector('option[value=""]').remove();

    var rows = data.days.filter(function (r) {
      return r[C.month] === f.month && (!f.street || r[C.street] === f.street) && (!f.community || r[C.community_code] === f.community);
    });
    var last = rows.reduce(function (m, r) { return r[C.day] > m ? r[C.day] : m; }, "");
    var byCommunity = {}, byDay = {}, total = {residents: 0, special: 0, tickets: 0, open_cases: 0, yellow: 0, red: 0, issues: 0};
    rows.forEach(function (r) {
      var c = byCommunity[r[C.community_code]] = byCommunity[r[C.community_code]] ||
        {name: r[C.community_name], residents: 0, special: 0, tickets: 0, open_cases: 0, yellow: 0, red: 0, issues: 0};
      [c, total].forEach(function (t) {
        t.tickets += r[C.new_tickets]; t.issues += r[C.data_issues];
        if (r[C.day] === last) {
          t.residents += r[C.residents]; t.special += r[C.special]; t.open_cases += r[C.open_cases];
          t.yellow += r[C.yellow]; t.red += r[C.red];
        }
      });
      byDay[r[C.day]] = (byDay[r[C.day]] || 0) + r[C.new_tickets];
    });
    var warnings = data.warnings.filter(function (w) {
      return w[0].slice(0, 7) === f.month && (!f.street || w[5] === f.street) && (!f.community || w[4] === f.community) &&
        (w[4] || w[5] || (!f.street && !f.community));
    });
    var tiles = [["residents", "居民（" + (last ? last.slice(5) : "无数据") + "）", total.residents],
                 ["tickets", "本月新增工单", total.tickets], ["open_cases", "未结案件（" + (last ? last.slice(5) : "") + "）", total.open_cases],
                 ["codes", "黄码＋红码（" + (last ? last.slice(5) : "") + "）", total.yellow + total.red],
                 ["issues", "本月待核数据", total.issues], ["warnings", "本月预警", warnings.length]];
    $("f-tiles").innerHTML = tiles.map(function (t) {
      return '<div data-k="' + t[0] + '">' + esc(t[1]) + "<b>" + fmt(t[2]) + "</b></div>";
    }).join("");
    var days = Object.keys(byDay).sort();
    $("f-chart").innerHTML = days.length ? lineChart(days, days.map(function (d) { return byDay[d]; })) : "<p>无数据</p>";
    $("f-table").innerHTML = "<tr><th>社区</th><th>居民</th><th>重点人群</th><th>本月工单</th><th>未结案件</th><th>黄码</th><th>红码</th><th>本月待核</th></tr>" +
      Object.keys(byCommunity).sort().map(function (k) {
        var c = byCommunity[k];
        return '<tr data-community="' + esc(k) + '"><td>' + esc(c.name) + "</td>" + [c.residents, c.special, c.tickets, c.open_cases, c.yellow, c.red, c.issues]
          .map(function (v) { return "<td>" + fmt(v) + "</td>"; }).join("") + "</tr>";
      }).join("");
    $("f-warnings").innerHTML = "<tr><th>日期</th><th>范围</th><th>名称</th><th>指标</th><th>近3日件数</th></tr>" +
      warnings.map(function (w) {
        return "<tr><td>" + w[0].slice(5) + "</td><td>" + esc(data.scopes[w[1]] || w[1]) + "</td><td>" + esc(w[2]) + "</td><td>" +
          esc(data.signals[w[3]] || w[3]) + "</td><td>" + fmt(w[6]) + "</td></tr>";
      }).join("");
  }

  function choose() {
    var parts = [["street", $("f-street").value], ["community", $("f-community").value], ["month", $("f-month").value]]
      .filter(function (p) { return p[1]; }).map(function (p) { return p[0] + "=" + encodeURIComponent(p[1]); });
    location.hash = parts.join("&");
    render(); // at once, not only on the hashchange event that follows
  }

  ["f-street", "f-community", "f-month"].forEach(function (id) { $(id).addEventListener("change", choose); });
  window.addEventListener("hashchange", render);
  render();
})();

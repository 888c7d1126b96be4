// SPDX-License-Identifier: Apache-2.0
// The coordinator's /dashboard: one self-contained HTML page (no external scripts) that polls
// /v1/status every second and plots tokens per second, the mean accepted draft tokens per target
// pass and each shard's forward-pass latency, next to the cluster's members and sessions.
#ifndef VERDICT_SERVICES_ADMIN_DASHBOARD_H_
#define VERDICT_SERVICES_ADMIN_DASHBOARD_H_

namespace verdict::services {

inline constexpr char kDashboardHtml[] = R"html(<!doctype html>
<html><head><meta charset="utf-8"><title>Verdict cluster</title>
<style>
body{font:14px system-ui,sans-serif;margin:20px;color:#222}h1{font-size:20px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
.ok{color:#080}.bad{color:#b00}canvas{border:1px solid #ccc;margin-right:12px}
</style></head><body>
<h1 id="title">Verdict cluster</h1>
<div id="summary">loading...</div>
<div><canvas id="tps" width="420" height="150"></canvas><canvas id="acc" width="420" height="150"></canvas><canvas id="lat" width="420" height="150"></canvas></div>
<h2>Members</h2><table id="members"></table>
<h2>Sessions</h2><table id="sessions"></table>
<script>
const tps=[],acc=[],lat=[];let last=null,ticks=0;
function plot(id,data,label){const c=document.getElementById(id),g=c.getContext('2d');
g.clearRect(0,0,c.width,c.height);const max=Math.max(1e-9,...data);g.fillText(label+' (max '+max.toFixed(2)+')',6,12);
g.beginPath();data.forEach((v,i)=>{const x=i*(c.width/60),y=c.height-4-(v/max)*(c.height-20);i?g.lineTo(x,y):g.moveTo(x,y)});g.stroke();}
function row(cells,h){return '<tr>'+cells.map(c=>h?'<th>'+c+'</th>':'<td>'+c+'</td>').join('')+'</tr>';}
async function tick(){try{const s=await (await fetch('/v1/status')).json();document.body.dataset.updates=++ticks;
document.getElementById('title').textContent='Verdict cluster "'+s.cluster+'"';
const n=v=>Number(v||0),t=s.totals,now=performance.now();
const tokens=n(t.tokens),passes=n(t.target_passes),accepted=n(t.accepted_exact)+n(t.accepted_judge)+n(t.accepted_lossy);
if(last){const dt=(now-last.now)/1000;tps.push(Math.max(0,(tokens-last.tokens)/dt));
const dp=passes-last.passes,da=accepted-last.acc;acc.push(dp>0?da/dp:0);
if(tps.length>60){tps.shift();acc.shift();}}
const shards=s.members.filter(m=>m.role.startsWith('shard'));lat.push(Math.max(0,...shards.map(m=>m.forward_ms_mean||0)));if(lat.length>60)lat.shift();
last={now,tokens,passes,acc:accepted};
plot('tps',tps,'tokens/s');plot('acc',acc,'accepted draft tokens per target pass');plot('lat',lat,'slowest shard: mean forward ms');
document.getElementById('summary').innerHTML='requests '+n(s.requests)+' (failed '+n(s.requests_failed)+'), tokens '+tokens+
', target passes '+passes+', accepted exact/judge/lossy '+n(t.accepted_exact)+'/'+n(t.accepted_judge)+'/'+n(t.accepted_lossy)+
', pipelined guesses held '+n(t.optimistic_hits)+'/'+n(t.optimistic_blocks)+', sessions '+s.sessions.length+', uptime '+s.uptime_seconds.toFixed(0)+' s';
document.getElementById('members').innerHTML=row(['role','address','layers','health','forward ms (mean / last)'],1)+s.members.map(m=>row([m.role,m.address,
m.layers||'',m.healthy?'<span class="ok">up</span>':'<span class="bad">down</span>',
!m.role.startsWith('shard')||m.forward_ms_mean<0?'':m.forward_ms_mean.toFixed(2)+' / '+m.forward_ms_last.toFixed(2)])).join('');
document.getElementById('sessions').innerHTML=row(['id','request','policy','prompt','generated','window','degraded'],1)+
s.sessions.map(x=>row([x.session_id,x.request_id,x.policy,x.prompt_tokens,x.generated_tokens,x.draft_window,x.degraded])).join('');
}catch(e){document.getElementById('summary').textContent='status unavailable: '+e;}}
tick();setInterval(tick,1000);
</script></body></html>
)html";

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_ADMIN_DASHBOARD_H_

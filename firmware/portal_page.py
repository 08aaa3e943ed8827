# The installer's page: one small HTML document (no external resources: the phone has no internet
# while it is on the meter's access point). Server-rendered so the form works without JavaScript;
# with JavaScript it follows /api/status after a join and shows each CT live from /api/readings.
#
# The constant parts are bytes literals sent as they are: frozen into the firmware image they live in
# flash, so a page costs the heap only its few variable parts. The order (Portal.page):
#   HEAD_OPEN, refresh tag or nothing, HEAD_SERIAL, serial, HEAD_FIRMWARE, version, HEAD_CLOSE,
#   the status card, FORM_OPEN, the networks, FORM_CLOSE, LIVE,
#   SCRIPT_OPEN, true|false (follow /api/status from the start), SCRIPT_CLOSE, TAIL.
HEAD_OPEN = b"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">"""

HEAD_SERIAL = b"""<title>Amp Guard setup</title>
<style>
body{font:16px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#111}
main{max-width:34em;margin:auto;padding:1em}
h1{font-size:1.3em;margin:.2em 0}h2{font-size:1.05em;margin:1.2em 0 .4em}
.card{background:#fff;border-radius:10px;padding:1em;margin:.8em 0;box-shadow:0 1px 3px #0002}
.muted{color:#666;font-size:.9em}
label{display:block;margin:.5em 0 .2em}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.6em;font-size:1em;
border:1px solid #bbb;border-radius:6px}
button{margin-top:.8em;width:100%;padding:.8em;font-size:1em;border:0;border-radius:6px;
background:#0a6;color:#fff}
.net{display:flex;justify-content:space-between;padding:.5em .2em;border-bottom:1px solid #eee}
.net label{margin:0;flex:1}
.ok{color:#07603a}.bad{color:#b00020}
table{width:100%;border-collapse:collapse}td,th{padding:.3em;text-align:left;border-bottom:1px solid #eee}
</style></head><body><main>
<h1>Amp Guard setup</h1>
<p class="muted">Serial """

HEAD_FIRMWARE = b""" &middot; firmware """

HEAD_CLOSE = b"""</p>
"""

FORM_OPEN = b"""<div class="card"><h2>Wi-Fi network (2.4 GHz)</h2>
<form method="post" action="/connect" id="join">"""

FORM_CLOSE = b"""
<label for="hidden">Or a hidden network's name</label>
<input type="text" id="hidden" name="hidden_ssid" maxlength="32" value="">
<label for="password">Password (empty for an open network, at most 30 characters)</label>
<input type="password" id="password" name="password" maxlength="30" autocomplete="off">
<button type="submit">Connect</button></form></div>
"""

LIVE = b"""<div class="card"><h2>Current transformers, live</h2>
<p class="muted" id="livenote">Readings appear here while the meter measures.</p>
<table id="live"></table></div>
"""

SCRIPT_OPEN = b"""<script>
var E={wrong_password:"The network did not accept the password.",
no_ap_found:"The network was not found. Is it a 2.4 GHz network within reach?",
no_ip:"The network was joined but gave no address (DHCP).",
timeout:"The network did not answer in time."};
var A="""

SCRIPT_CLOSE = b""";
function $(i){return document.getElementById(i)}
function t(s){return String(s).replace(/[&<>"']/g,function(c){return "&#"+c.charCodeAt(0)+";"})}
function show(s){var e=$("status");if(!e)return;var m;
if(s.state=="connected")m='<b class="ok">Connected</b> to '+
(s.network=="lan"?"the wired network":t(s.ssid))+", address "+t(s.ip);
else if(s.state=="connecting")m="Connecting to "+t(s.ssid||"")+" &hellip;";
else if(s.state=="failed")m='<b class="bad">Not connected.</b> '+(E[s.error]||"")+" Please try again.";
else m="Not set up yet: choose the site's network below.";
e.innerHTML=m}
function poll(){fetch("/api/status").then(function(r){return r.json()}).then(function(s){show(s);
if(s.state=="connecting")setTimeout(poll,1000)}).catch(function(){setTimeout(poll,2000)})}
function live(){fetch("/api/readings").then(function(r){return r.json()}).then(function(r){
if(!r.phases){setTimeout(live,2000);return}
var h="<tr><th>Phase</th><th>Current</th><th>Power</th><th>Direction</th></tr>",n=[];
r.phases.forEach(function(p){h+="<tr><td>L"+p.l+"</td><td>"+p.current_a.toFixed(2)+" A</td><td>"+
Math.round(p.power_w)+" W</td><td>"+(p.current_a==0?"-":p.power_w>=0?"from grid":"to grid")+"</td></tr>";
(p.advice||[]).forEach(function(a){n.push("L"+p.l+": "+a)})});
$("live").innerHTML=h;$("livenote").innerHTML=n.length?'<b class="bad">'+n.map(t).join("<br>")+"</b>":
"Every clamp looks right.";setTimeout(live,2000)}).catch(function(){setTimeout(live,3000)})}
var f=$("join");if(f)f.addEventListener("submit",function(ev){ev.preventDefault();
fetch("/connect",{method:"POST",headers:{"Content-Type":"application/json"},
body:JSON.stringify({ssid:pick(),password:$("password").value})}).then(function(r){
return r.json().then(function(b){if(r.status>=400){$("status").innerHTML='<b class="bad">'+t(b.error)+"</b>"}
else{show({state:"connecting",ssid:pick()});setTimeout(poll,1000)}})})});
function pick(){var h=$("hidden").value,r=document.querySelector("input[name=ssid]:checked");
return h||(r?r.value:"")}
if(A)poll();live();
</script>
"""

TAIL = b"""</main></body></html>"""

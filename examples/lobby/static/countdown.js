// The countdown of a scheduled invite link (data-status "not_yet"): counts
// down to the link's opens_at, then shows the email form without a reload
// and sets data-status to "form".  The page gives the seconds left by the
// database's clock when it was made (data-seconds), so that the browser's
// clock does not matter.  A static file: the lobby's Content-Security-Policy
// allows no inline script.
'use strict';
(function () {
  var counter = document.getElementById('countdown');
  var form = document.getElementById('invite-form');
  if (!counter || !form) return;
  var left0 = Number(counter.getAttribute('data-seconds'));
  var start = performance.now();

  function two(n) { return n < 10 ? '0' + n : String(n); }
  function text(s) {
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600),
        m = Math.floor(s % 3600 / 60), r = s % 60;
    if (d) return d + ' d ' + h + ' h ' + two(m) + ' min';
    if (h) return h + ' h ' + two(m) + ' min ' + two(r) + ' s';
    if (m) return m + ' min ' + two(r) + ' s';
    return r + ' s';
  }
  function open() {
    document.getElementById('waiting').hidden = true;
    form.hidden = false;
    document.querySelector('main').setAttribute('data-status', 'form');
    document.getElementById('email').focus();
  }
  function tick() {
    var left = left0 - (performance.now() - start) / 1000;
    if (!(left > 0)) { open(); return; }
    counter.textContent = text(Math.ceil(left));
    // wake at the next whole second, and at the opening itself
    setTimeout(tick, Math.max(20, Math.min(1000, (left - Math.floor(left)) * 1000 || 1000)));
  }
  tick();
})();

// mend serve's only script: follows the run's event stream and updates the
// page in place, with textContent only (a step's words never become markup).
// Event ids are JOURNAL:SEQ; the browser resends the last as Last-Event-ID.
(() => {
  const body = document.body, run = body.dataset.run;
  let last = body.dataset.seq, es = null;
  // The ids received, in order: the browser test compares them with the journal.
  const received = [];
  const $ = (id) => document.getElementById(id);
  const dur = (ms) => ms < 60000 ? (ms / 1000).toFixed(1) + ' s'
    : ms < 3600000 ? Math.floor(ms / 60000) + ' min ' + String(Math.floor(ms / 1000) % 60).padStart(2, '0') + ' s'
    : Math.floor(ms / 3600000) + ' h ' + String(Math.floor(ms / 60000) % 60).padStart(2, '0') + ' min';
  const hms = (ms) => new Date(ms).toISOString().slice(11, 19);
  const counts = (c) => {
    if (!c.length) return 'none';
    const total = c.reduce((a, [, n]) => a + n, 0);
    const fin = c.filter(([s]) => s === 'done' || s === 'undone').reduce((a, [, n]) => a + n, 0);
    return fin + '/' + total + ': ' + c.map(([s, n]) => n + ' ' + s).join(', ');
  };
  function row(d) {
    let tr = $('step-' + d.idx);
    if (!tr) {
      tr = document.createElement('tr'); tr.id = 'step-' + d.idx;
      for (const c of ['n', 'name', 'status', 'dur', 'actions']) {
        const td = document.createElement('td'); td.className = c; tr.appendChild(td);
      }
      tr.cells[0].textContent = d.idx + 1;
      document.querySelector('#steps tbody').appendChild(tr);
    }
    return tr;
  }
  function seen(e) {
    last = e.lastEventId.split(':')[1];
    received.push(e.lastEventId);
    body.dataset.received = received.join(' ');
    $('seq').textContent = last;
  }
  function step(e) {
    seen(e);
    const d = JSON.parse(e.data), tr = row(d);
    tr.className = 's-' + d.status;
    tr.querySelector('.status').textContent = d.status;
    tr.querySelector('.dur').textContent = dur((d.finished_at || Date.now()) - d.started_at);
    const a = tr.querySelector('.actions');
    (a.firstElementChild || a).textContent = counts(d.actions);
  }
  function open() {
    es = new EventSource('/runs/' + run + '/stream?after=' + last);
    es.addEventListener('step', step);
    es.addEventListener('actions', step);
    es.addEventListener('event', (e) => {
      seen(e);
      const d = JSON.parse(e.data), li = document.createElement('li');
      li.className = 'l-' + d.level;
      const t = document.createElement('time'); t.textContent = hms(d.at);
      const w = document.createElement('span'); w.className = 'who';
      w.textContent = (d.step === null ? '' : 'step ' + d.step + ' ') + d.level;
      const m = document.createElement('span'); m.className = 'msg'; m.textContent = d.message;
      li.append(t, ' ', w, ' ', m); $('events').appendChild(li);
    });
    es.addEventListener('run', (e) => {
      seen(e);
      const d = JSON.parse(e.data), s = $('run-status');
      s.textContent = d.status; s.className = 'badge s-' + d.status;
      if (d.finished_at) $('run-dur').textContent = dur(d.finished_at - d.started_at);
    });
    // The run's writer is done: what followed its final status (the free
    // space after a commit's purge) has come, and nothing more will.
    es.addEventListener('end', () => {
      es.close(); body.dataset.live = '0';
      const l = $('live'); if (l) l.textContent = 'finished: ' + $('run-status').textContent;
    });
    // Another journal (restored or replaced): start over from the page.
    es.addEventListener('reset', () => { es.close(); location.reload(); });
    // A proxy's 502 while mend serve restarts closes an EventSource for
    // good (readyState 2): open a new one from the last id seen.
    es.onerror = () => { if (es.readyState === 2 && body.dataset.live === '1') setTimeout(open, 2000); };
  }
  open();
})();

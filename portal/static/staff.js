// Staff desk: print buttons on printable forms (no inline scripts: the CSP forbids them).
document.addEventListener("click", function (event) {
  var target = event.target;
  if (target && target.classList && target.classList.contains("print-button")) {
    window.print();
  }
});

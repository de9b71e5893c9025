// Icons load SVG over the network in Grafana; in tests they render as an empty svg.
import React from 'react';

type Props = React.SVGProps<SVGSVGElement> & { src: string; innerRef?: React.Ref<SVGSVGElement> };

export default function InlineSVG({ src, innerRef, ...rest }: Props) {
  return <svg data-src={src} ref={innerRef} {...rest} />;
}
